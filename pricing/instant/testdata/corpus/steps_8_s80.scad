// ficus pricing corpus: steps_8_s80
$fn = 48;
for (i = [0 : 8 - 1]) translate([i * 8 / 2, i * 8 / 2, i * 5]) cube([80 - i * 8, 80 - i * 8, 5]);
