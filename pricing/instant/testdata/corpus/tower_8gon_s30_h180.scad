// ficus pricing corpus: tower_8gon_s30_h180
$fn = 48;
cylinder(d = 30, h = 180, $fn = 8);
