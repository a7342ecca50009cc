// ficus pricing corpus: tower_4gon_s12_h120
$fn = 48;
cylinder(d = 12, h = 120, $fn = 4);
