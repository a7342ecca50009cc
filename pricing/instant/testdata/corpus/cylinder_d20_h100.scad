// ficus pricing corpus: cylinder_d20_h100
$fn = 48;
cylinder(d = 20, h = 100);
