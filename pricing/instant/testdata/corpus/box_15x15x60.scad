// ficus pricing corpus: box_15x15x60
$fn = 48;
cube([15, 15, 60]);
