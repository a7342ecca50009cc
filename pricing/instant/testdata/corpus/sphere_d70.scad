// ficus pricing corpus: sphere_d70
$fn = 48;
translate([0, 0, 70 / 2]) sphere(d = 70);
