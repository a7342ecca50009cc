// ficus pricing corpus: cylinder_d40_h80
$fn = 48;
cylinder(d = 40, h = 80);
