%% The Cowboy handler of fin_close_clients_SUITE's cowboy group (Cowboy
%% comes from Debian's rabbitmq-server package at run time; see
%% scripts/cowboy.sh). Modes:
%% - early: answers Status with Size bytes and `connection: close' without
%%   reading the request body, then tells the case.
%% - read: reads the whole body and answers 200 with its length.
%% - small: answers 200 "hello", keeping the connection alive.
-module(fin_close_cowboy_handler).

-export([init/2]).

init(Req, #{mode := early, status := Status, size := Size, report := {Case, Ref}} = State) ->
    Req1 = cowboy_req:reply(Status, #{<<"connection">> => <<"close">>},
                            binary:copy(<<"a">>, Size), Req),
    Case ! {served, Ref, {ok, ok}},
    {ok, Req1, State};
init(Req, #{mode := read} = State) ->
    {Length, Req1} = read_body(Req, 0),
    {ok, cowboy_req:reply(200, #{}, integer_to_binary(Length), Req1), State};
init(Req, #{mode := small} = State) ->
    {ok, cowboy_req:reply(200, #{}, <<"hello">>, Req), State}.

read_body(Req, Length) ->
    case cowboy_req:read_body(Req) of
        {ok, Data, Req1} -> {Length + byte_size(Data), Req1};
        {more, Data, Req1} -> read_body(Req1, Length + byte_size(Data))
    end.
