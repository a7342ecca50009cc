// ficus pricing corpus: star5_r40_h10
$fn = 48;
linear_extrude(height = 10) polygon([for (i = [0 : 2 * 5 - 1]) let(r = i % 2 == 0 ? 40 : 18, a = 180 * i / 5) [r * cos(a), r * sin(a)]]);
