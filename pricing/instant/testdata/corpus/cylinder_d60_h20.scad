// ficus pricing corpus: cylinder_d60_h20
$fn = 48;
cylinder(d = 60, h = 20);
