// ficus pricing corpus: box_40x40x10
$fn = 48;
cube([40, 40, 10]);
