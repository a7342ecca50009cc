// ficus pricing corpus: steps_5_s60
$fn = 48;
for (i = [0 : 5 - 1]) translate([i * 10 / 2, i * 10 / 2, i * 5]) cube([60 - i * 10, 60 - i * 10, 5]);
