// ficus pricing corpus: torus_R50_r5
$fn = 48;
translate([0, 0, 5]) rotate_extrude() translate([50, 0]) circle(r = 5);
