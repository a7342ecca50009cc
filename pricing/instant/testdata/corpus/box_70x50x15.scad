// ficus pricing corpus: box_70x50x15
$fn = 48;
cube([70, 50, 15]);
