// ficus pricing corpus: tower_6gon_s20_h150
$fn = 48;
cylinder(d = 20, h = 150, $fn = 6);
