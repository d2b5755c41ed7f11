%% The ways of closing a plain TCP socket that rows 2 to 4, 7, 8 and 12
%% compare, and the timing of one close.
-module(bench_methods).

-export([close_with/2, timed/2, name/1]).

-define(COWBOY_TIMEOUT, 1000).

%% The close's wall time in ns; the longest of each method so far is kept
%% for row 7, which reports it.

timed(Method, S) ->
    T0 = erlang:monotonic_time(nanosecond),
    ok = close_with(Method, S),
    T = erlang:monotonic_time(nanosecond) - T0,
    put({longest, Method}, max(T, case get({longest, Method}) of undefined -> 0; L -> L end)),
    T.

close_with(native, S) -> gen_tcp:close(S);
close_with(recv, S) -> _ = gen_tcp:recv(S, 0, ?COWBOY_TIMEOUT), gen_tcp:close(S);
close_with(cowboy, S) -> cowboy_linger(S);
close_with(fin_close, S) -> fin_close:close(S).

%% As Cowboy's linger: half-close, then read and drop until the peer closes
%% or the timeout runs out; then close.
cowboy_linger(S) ->
    _ = gen_tcp:shutdown(S, write),
    Deadline = erlang:monotonic_time(millisecond) + ?COWBOY_TIMEOUT,
    cowboy_loop(S, Deadline).

cowboy_loop(S, Deadline) ->
    case Deadline - erlang:monotonic_time(millisecond) of
        Left when Left > 0 ->
            case gen_tcp:recv(S, 0, Left) of
                {ok, _} -> cowboy_loop(S, Deadline);
                {error, _} -> gen_tcp:close(S)
            end;
        _ ->
            gen_tcp:close(S)
    end.

name(native) -> "gen_tcp:close/1";
name(recv) -> "recv(S, 0, 1 s) + close";
name(cowboy) -> "Cowboy-style linger, 1 s";
name(fin_close) -> "fin_close:close/1".
