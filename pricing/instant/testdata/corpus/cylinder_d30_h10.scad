// ficus pricing corpus: cylinder_d30_h10
$fn = 48;
cylinder(d = 30, h = 10);
