// ficus pricing corpus: star8_r60_h5
$fn = 48;
linear_extrude(height = 5) polygon([for (i = [0 : 2 * 8 - 1]) let(r = i % 2 == 0 ? 60 : 40, a = 180 * i / 8) [r * cos(a), r * sin(a)]]);
