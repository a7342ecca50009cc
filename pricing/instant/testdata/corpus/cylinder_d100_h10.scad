// ficus pricing corpus: cylinder_d100_h10
$fn = 48;
cylinder(d = 100, h = 10);
