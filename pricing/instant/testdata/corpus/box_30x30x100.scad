// ficus pricing corpus: box_30x30x100
$fn = 48;
cube([30, 30, 100]);
