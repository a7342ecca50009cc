// ficus pricing corpus: grid_40_h20_t2
$fn = 48;
intersection() {
  cube([40, 40, 20]);
  union() {
    for (i = [0 : 4]) translate([i * (40 - 2) / 4, 0, 0]) cube([2, 40, 20]);
    for (i = [0 : 4]) translate([0, i * (40 - 2) / 4, 0]) cube([40, 2, 20]);
  }
}
