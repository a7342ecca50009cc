// ficus pricing corpus: box_10x10x10
$fn = 48;
cube([10, 10, 10]);
