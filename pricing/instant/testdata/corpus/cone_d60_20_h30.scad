// ficus pricing corpus: cone_d60_20_h30
$fn = 48;
cylinder(d1 = 60, d2 = 20, h = 30);
