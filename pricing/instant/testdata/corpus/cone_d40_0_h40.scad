// ficus pricing corpus: cone_d40_0_h40
$fn = 48;
cylinder(d1 = 40, d2 = 0, h = 40);
