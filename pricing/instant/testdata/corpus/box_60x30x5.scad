// ficus pricing corpus: box_60x30x5
$fn = 48;
cube([60, 30, 5]);
