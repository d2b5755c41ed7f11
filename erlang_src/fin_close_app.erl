%% @private
%% @doc The fin_close application: one supervisor, one notifier process
%% (which passes results on to `notify' pids and writes debug log lines),
%% and one process that keeps the transports' listener options.
%% The native reactor thread is not supervised here; it starts with the
%% first `fin_close:close/2' and lives as long as the node.
-module(fin_close_app).
-behaviour(application).
-behaviour(supervisor).

-export([start/2]).
-export([stop/1]).
-export([init/1]).

-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_Type, _Args) ->
    supervisor:start_link({local, fin_close_sup}, ?MODULE, []).

-spec stop(term()) -> ok.
stop(_State) ->
    ok.

-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    Notifier = #{id => fin_close_notifier, start => {fin_close_notifier, start_link, []}},
    Listeners = #{id => fin_close_listeners, start => {fin_close_listeners, start_link, []}},
    {ok, {#{strategy => one_for_one, intensity => 10, period => 10}, [Notifier, Listeners]}}.
