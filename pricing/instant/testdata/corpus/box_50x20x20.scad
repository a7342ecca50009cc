// ficus pricing corpus: box_50x20x20
$fn = 48;
cube([50, 20, 20]);
