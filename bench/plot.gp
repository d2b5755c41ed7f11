# Draws bench/results.png from bench/results.dat (written by bench.escript):
# close throughput and the caller's p99 close latency against the number of
# connections closed, one line per method.
set terminal pngcairo size 1200,480 font "sans,10" noenhanced
set output "results.png"
set multiplot layout 1,2 title "Closing N loopback connections, each with 1000 unread bytes, from one Erlang process (peers read and close on FIN)"
set key top right
set grid
set logscale x
set xrange [1600:25000]
set xtics (2000, 5000, 10000, 20000)
set xlabel "connections closed"
methods = "native recv cowboy fin_close"
titles = "gen_tcp:close/1|recv(S,0,1s)+close|Cowboy-style linger 1s|fin_close:close/1"
set ylabel "closes per second"
set yrange [0:*]
plot for [i=1:4] "results.dat" using 1:(strcol(2) eq word(methods, i) ? $3 : 1/0) with linespoints lw 2 title system("echo '".titles."' | cut -d'|' -f".i)
set ylabel "caller latency of close, p99 (us, log scale)"
set logscale y
set yrange [*:*]
plot for [i=1:4] "results.dat" using 1:(strcol(2) eq word(methods, i) ? $4 : 1/0) with linespoints lw 2 title system("echo '".titles."' | cut -d'|' -f".i)
unset multiplot
