// ficus pricing corpus: grid_60_h40_t1.2
$fn = 48;
intersection() {
  cube([60, 60, 40]);
  union() {
    for (i = [0 : 6]) translate([i * (60 - 1.2) / 6, 0, 0]) cube([1.2, 60, 40]);
    for (i = [0 : 6]) translate([0, i * (60 - 1.2) / 6, 0]) cube([60, 1.2, 40]);
  }
}
