%% Common Test callbacks of every suite, as a hook (each suite's suite/0
%% has {ct_hooks, [fin_close_ct_hook]}); a suite's own callbacks, where it
%% has any, run after these. The helpers are support/fin_close_ct.erl.
-module(fin_close_ct_hook).

-include_lib("common_test/include/ct.hrl").

-export([init/2, pre_init_per_suite/3, pre_init_per_group/4, pre_init_per_testcase/4,
         post_end_per_testcase/5]).

-import(fin_close_ct, [check_nothing_left/1, fds/0, pair/3]).

init(_Id, _Opts) ->
    {ok, #{}}.

%% The application started, and the reactor (its epoll and eventfd) running
%% before the first case counts descriptors.
pre_init_per_suite(_Suite, Config, State) ->
    {ok, _} = application:ensure_all_started(fin_close),
    {S, C} = pair([{kind, inet}], {127, 0, 0, 1}, []),
    ok = fin_close:close(S),
    ok = gen_tcp:close(C),
    {Config, State}.

%% A group is the kind of server socket its cases use (see kind/1); an
%% outer group (a TLS version) is overridden by the inner one.
pre_init_per_group(_Suite, Kind, Config, State) ->
    {[{kind, Kind} | Config], State}.

pre_init_per_testcase(_Suite, _Case, Config, State) ->
    {[{fds, fds()} | Config], State}.

%% Nothing outlives a passed case: every socket it handed over has ended,
%% and every descriptor it opened is closed, the reactor's duplicates
%% included.
post_end_per_testcase(_Suite, _Case, Config, ok, State) ->
    try check_nothing_left(?config(fds, Config)) of
        ok -> {ok, State};
        {fail, Reason} -> {{fail, Reason}, State}
    catch
        error:Reason -> {{fail, Reason}, State}
    end;
post_end_per_testcase(_Suite, _Case, _Config, Return, State) ->
    {Return, State}.
