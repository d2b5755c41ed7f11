%% @private
%% @doc Passes the reactor's results on to the `notify' pids, and writes
%% the debug log line of every socket that is cut off while debug logging
%% is on for it. The reactor sends to this process, a gen_server's compiled
%% receive, and the pids get an ordinary message from an Erlang process: a
%% message from the reactor thread taken by an interpreted receive (the
%% shell, IEx) was seen to corrupt the receiver's heap on OTP 25.2 (see
%% doc/development.md). Without this process (fin_close used as a plain
%% library), or once it is dead, the reactor sends to the pids itself;
%% stopping, it passes on what its mailbox still holds. No socket depends
%% on it.
-module(fin_close_notifier).
-behaviour(gen_server).

-include_lib("kernel/include/logger.hrl").

-export([start_link/0]).
-export([find/0]).
-export([logging/0]).
-export([init/1]).
-export([handle_call/3]).
-export([handle_cast/2]).
-export([handle_info/2]).
-export([terminate/2]).

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% @doc The notifier, starting the application if it is not running (fin_close
%% used as a plain library).
-spec find() -> {ok, pid()} | {error, atom()}.
find() ->
    case whereis(?MODULE) of
        undefined ->
            _ = application:ensure_all_started(fin_close),
            case whereis(?MODULE) of
                undefined -> {error, notifier_down};
                Pid -> {ok, Pid}
            end;
        Pid ->
            {ok, Pid}
    end.

%% @doc Whether the notifier writes debug log lines (set with
%% `logger:set_application_level(fin_close, debug)').
-spec logging() -> boolean().
logging() ->
    logger:allow(debug, ?MODULE).

-spec init([]) -> {ok, #{}}.
init([]) ->
    %% So that terminate/2 runs when the application stops, and passes on
    %% what is left.
    process_flag(trap_exit, true),
    {ok, #{}}.

-spec handle_call(term(), gen_server:from(), #{}) -> {reply, {error, badarg}, #{}}.
handle_call(_Ignored, _From, State) ->
    {reply, {error, badarg}, State}.

-spec handle_cast(term(), #{}) -> {noreply, #{}}.
handle_cast(_Ignored, State) ->
    {noreply, State}.

-spec handle_info(term(), #{}) -> {noreply, #{}}.
handle_info({fin_close_ended, Ticket, Result, Notify, Log}, State) ->
    relay(Ticket, Result, Notify, Log),
    {noreply, State};
handle_info(_Ignored, State) ->
    {noreply, State}.

-spec terminate(term(), #{}) -> ok.
terminate(_Reason, _State) ->
    receive
        {fin_close_ended, Ticket, Result, Notify, Log} ->
            relay(Ticket, Result, Notify, Log),
            terminate(stopping, #{})
    after 0 ->
        ok
    end.

-spec relay(reference() | undefined, fin_close:result(), [pid()], boolean()) -> ok.
relay(Ticket, Result, Notify, Log) ->
    _ = [Pid ! {fin_close, Ticket, Result} || Pid <- Notify],
    case Log of
        true -> log_end(Result);
        false -> ok
    end.

%% One line per socket that did not end clean: its outcome (see
%% fin_close:outcome/0) and, for `error', the reason.
-spec log_end(fin_close:result() | map()) -> ok.
log_end(#{outcome := clean}) ->
    ok;
log_end(#{outcome := Outcome, lingered_ms := Ms, drained := Drained} = Result) ->
    Address = fun(Key) -> fin_close_table:address(maps:get(Key, Result, undefined)) end,
    Why = case Result of
              #{reason := Reason} -> io_lib:format(" (~p)", [Reason]);
              _ -> ""
          end,
    ?LOG_DEBUG("fin_close: ~s -> ~s ended ~p~s after ~b ms, ~b bytes discarded",
               [Address(local), Address(peer), Outcome, Why, Ms, Drained],
               %% No domain of its own: OTP's default handler shows only
               %% events without one (or under [otp, sasl]).
               #{fin_close => Result});
log_end(_) ->
    %% A report of another shape (a library from another release).
    ok.
