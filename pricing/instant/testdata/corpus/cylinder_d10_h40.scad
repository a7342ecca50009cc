// ficus pricing corpus: cylinder_d10_h40
$fn = 48;
cylinder(d = 10, h = 40);
