%% This VM as the kernel sees it (/proc): its descriptor limit, its
%% resident memory, and the reactor thread's CPU time.
-module(bench_proc).

-export([fd_limit/0, rss/0]).
-export([reactor_tid/0, reactor_cpu_ns/0, thread_cpu_ms/1]).

fd_limit() ->
    list_to_integer(string:trim(os:cmd("sh -c 'ulimit -n'"))).

rss() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    {match, [Kb]} = re:run(Status, "VmRSS:\\s*([0-9]+) kB", [{capture, all_but_first, list}]),
    list_to_integer(Kb) * 1024.

reactor_tid() ->
    {ok, Tasks} = file:list_dir("/proc/self/task"),
    hd([T || T <- Tasks,
             {ok, <<"fin_close_react", _/binary>>} <- [file:read_file("/proc/self/task/" ++ T ++ "/comm")]]).

%% The reactor thread's CPU time so far (schedstat: nanoseconds), 0 before
%% it runs.
reactor_cpu_ns() ->
    case catch reactor_tid() of
        Tid when is_list(Tid) ->
            {ok, Stat} = file:read_file("/proc/self/task/" ++ Tid ++ "/schedstat"),
            binary_to_integer(hd(string:split(Stat, " ")));
        _ ->
            0
    end.

thread_cpu_ms(Tid) ->
    {ok, Stat} = file:read_file("/proc/self/task/" ++ Tid ++ "/stat"),
    [_, Rest] = string:split(Stat, ") "),
    Fields = string:split(Rest, " ", all),
    Ticks = binary_to_integer(lists:nth(12, Fields)) + binary_to_integer(lists:nth(13, Fields)),
    Ticks * 1000 / list_to_integer(string:trim(os:cmd("getconf CLK_TCK"))).
