// ficus pricing corpus: cylinder_d50_h50
$fn = 48;
cylinder(d = 50, h = 50);
