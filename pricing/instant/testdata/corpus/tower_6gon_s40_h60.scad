// ficus pricing corpus: tower_6gon_s40_h60
$fn = 48;
cylinder(d = 40, h = 60, $fn = 6);
