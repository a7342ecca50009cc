// ficus pricing corpus: box_80x80x40
$fn = 48;
cube([80, 80, 40]);
