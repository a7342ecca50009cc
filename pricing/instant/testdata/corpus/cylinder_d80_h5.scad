// ficus pricing corpus: cylinder_d80_h5
$fn = 48;
cylinder(d = 80, h = 5);
