%% What every row shares: a row and its judgment, the statistics it is
%% judged by, and the results it ends in (the table, results.md,
%% results.dat and, with gnuplot, results.png).
-module(bench_results).

-export([row/8, target/2]).
-export([median/1, percentile/2, ratio/3]).
-export([machine/0, table/1, write/4]).

%% A row of the table: Values are the rounds' figures; Met is true or false
%% where a target judges the row, none where it does not.
row(Row, Measure, Method, Values, Unit, Note, Target, Met) ->
    {Row, lists:flatten(Measure), Method, Values, Unit, lists:flatten(Note), Target, Met}.

%% Only fin_close's own rows carry a target; the alternatives are there to
%% be compared with.
target(fin_close, T) -> T;
target(_, _) -> "".

median(Xs) ->
    Sorted = lists:sort(Xs),
    lists:nth((length(Sorted) + 1) div 2, Sorted).

percentile(Xs, P) ->
    Sorted = lists:sort(Xs),
    lists:nth(max(1, min(length(Sorted), round(P / 100 * length(Sorted)))), Sorted).

ratio(_, Ref, _) when Ref == 0 -> "";
ratio(X, Ref, Name) -> io_lib:format("~.2fx ~s", [X / Ref, Name]).

machine() ->
    {ok, Cpu} = file:read_file("/proc/cpuinfo"),
    Model = case re:run(Cpu, "model name\\s*: (.*)", [{capture, all_but_first, list}]) of
                {match, [M]} -> M;
                nomatch -> "unknown"
            end,
    [io_lib:format("machine: ~b cores (~s), Linux ~s, ~s fds",
                   [erlang:system_info(logical_processors_available), Model,
                    string:trim(os:cmd("uname -r")), string:trim(os:cmd("sh -c 'ulimit -n'"))]),
     io_lib:format("OTP ~s (erts ~s), ~s", [erlang:system_info(otp_release), erlang:system_info(version),
                                            string:trim(os:cmd("rustc --version"))])].

table(Rows) ->
    Header = io_lib:format("~-2s ~-40s ~-34s ~12s ~12s ~12s ~-7s ~-32s ~-20s ~s~n",
                           ["#", "measure", "method", "median", "min", "max", "unit", "ratio / note",
                            "target", "met"]),
    [Header | [io_lib:format("~-2b ~-40s ~-34s ~12s ~12s ~12s ~-7s ~-32s ~-20s ~s~n",
                             [R, M, Me, num(median(V)), num(lists:min(V)), num(lists:max(V)), U, N, T,
                              met(Met)])
               || {R, M, Me, V, U, N, T, Met} <- Rows]].

num(X) when is_integer(X) -> integer_to_list(X);
num(X) when abs(X) >= 100 -> integer_to_list(round(X));
num(X) -> float_to_list(X * 1.0, [{decimals, 2}]).

met(none) -> "";
met(true) -> "yes";
met(false) -> "NO".

%% Into Out (bench/): the table with the machine it ran on, and the
%% throughput figures for plot.gp.
write(Out, Machine, Table, Plot) ->
    ok = file:write_file(filename:join(Out, "results.md"),
                         ["```\n", [[L, $\n] || L <- Machine], "\n", Table, "```\n"]),
    ok = file:write_file(filename:join(Out, "results.dat"), Plot),
    plot(Out).

plot(Out) ->
    case os:find_executable("gnuplot") of
        false ->
            io:format("gnuplot not found: no plot~n");
        Gnuplot ->
            Script = filename:join(Out, "plot.gp"),
            Cmd = io_lib:format("cd ~s && ~s ~s 2>&1", [Out, Gnuplot, Script]),
            io:format("~s", [os:cmd(lists:flatten(Cmd))]),
            io:format("plot: ~s~n", [filename:join(Out, "results.png")])
    end.
