// ficus pricing corpus: box_120x100x8
$fn = 48;
cube([120, 100, 8]);
