// ficus pricing corpus: sphere_d35
$fn = 48;
translate([0, 0, 35 / 2]) sphere(d = 35);
