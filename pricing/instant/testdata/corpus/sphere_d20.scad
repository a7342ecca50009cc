// ficus pricing corpus: sphere_d20
$fn = 48;
translate([0, 0, 20 / 2]) sphere(d = 20);
