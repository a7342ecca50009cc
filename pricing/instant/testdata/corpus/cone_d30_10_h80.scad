// ficus pricing corpus: cone_d30_10_h80
$fn = 48;
cylinder(d1 = 30, d2 = 10, h = 80);
