// ficus pricing corpus: sphere_d50
$fn = 48;
translate([0, 0, 50 / 2]) sphere(d = 50);
