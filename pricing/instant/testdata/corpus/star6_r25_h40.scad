// ficus pricing corpus: star6_r25_h40
$fn = 48;
linear_extrude(height = 40) polygon([for (i = [0 : 2 * 6 - 1]) let(r = i % 2 == 0 ? 25 : 12, a = 180 * i / 6) [r * cos(a), r * sin(a)]]);
