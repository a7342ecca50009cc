// ficus pricing corpus: box_20x20x20
$fn = 48;
cube([20, 20, 20]);
