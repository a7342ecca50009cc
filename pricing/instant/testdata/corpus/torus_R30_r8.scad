// ficus pricing corpus: torus_R30_r8
$fn = 48;
translate([0, 0, 8]) rotate_extrude() translate([30, 0]) circle(r = 8);
