// ficus pricing corpus: box_100x80x3
$fn = 48;
cube([100, 80, 3]);
