// ficus pricing corpus: sphere_d10
$fn = 48;
translate([0, 0, 10 / 2]) sphere(d = 10);
