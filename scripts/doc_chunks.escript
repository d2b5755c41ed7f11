#!/usr/bin/env escript
%% Puts each module's edoc into its compiled .beam as an EEP-48 "Docs"
%% chunk, so that `h(fin_close, close)` in erl and `h :fin_close.close` in
%% IEx show the API's docs in a user's own build, as they do for OTP's
%% modules. OTP 25 has no `-doc' attributes: edoc's chunk doclet writes the
%% chunks, and code:get_doc/1 reads a "Docs" chunk of the .beam first, which
%% follows the .beam wherever it goes (a release too).
%%
%% Run by rebar3's compile post-hook from the application's directory, as a
%% dependency too. rebar3 tells a hook the build folders but not its
%% application's ebin, so it is found the way rebar3 places it (see
%% ebin_dir/0). A .beam that already has its chunk is left alone: only
%% modules rebar3 has just compiled are documented again.
-mode(compile).

main(_) ->
    Ebin = ebin_dir(),
    Beams = [B || B <- filelib:wildcard(filename:join(Ebin, "*.beam")), not has_docs(B)],
    Sources = [S || B <- Beams,
                    S <- [filename:join("erlang_src", filename:basename(B, ".beam") ++ ".erl")],
                    filelib:is_regular(S)],
    Sources =:= [] orelse add_docs(Ebin, Sources).

%% Where rebar3 writes this application's .beam files: under Mix (rebar3
%% bare compile) the folder Mix gives it; a checkout (a folder or a link in
%% _checkouts) builds into _build/<profile>/checkouts; anything else, a
%% dependency or this project itself, into _build/<profile>/lib.
ebin_dir() ->
    {ok, Here} = file:get_cwd(),
    App = "fin_close",
    Checkout = filename:join(env("REBAR_CHECKOUTS_DIR"), App),
    case os:getenv("REBAR_BARE_COMPILER_OUTPUT_DIR") of
        Out when is_list(Out), Out =/= "" ->
            filename:join(Out, "ebin");
        _ ->
            case same_dir(Checkout, Here) of
                true -> filename:join([env("REBAR_CHECKOUTS_OUT_DIR"), App, "ebin"]);
                false -> filename:join([env("REBAR_DEPS_DIR"), App, "ebin"])
            end
    end.

env(Name) ->
    case os:getenv(Name) of
        false -> fail("~s is not set: run by rebar3's compile hook", [Name]);
        Value -> Value
    end.

%% A link in _checkouts is the same folder as the one the hook runs in.
same_dir(A, B) ->
    case {file:read_file_info(A), file:read_file_info(B)} of
        {{ok, IA}, {ok, IB}} ->
            {element(12, IA), element(13, IA)} =:= {element(12, IB), element(13, IB)};
        _ ->
            false
    end.

has_docs(Beam) ->
    case beam_lib:chunks(Beam, ["Docs"]) of
        {ok, _} -> true;
        {error, beam_lib, _} -> false
    end.

add_docs(Ebin, Sources) ->
    Tmp = filename:join(Ebin, ".doc_chunks"),
    Opts = [{doclet, edoc_doclet_chunks}, {layout, edoc_layout_chunks},
            {dir, Tmp}, {preprocess, true}, {includes, ["erlang_src"]}],
    try
        ok = edoc:files(Sources, Opts),
        [add_chunk(filename:join(Ebin, filename:basename(S, ".erl") ++ ".beam"),
                   filename:join([Tmp, "chunks", filename:basename(S, ".erl") ++ ".chunk"]))
         || S <- Sources]
    catch
        Class:Reason ->
            fail("edoc of ~p: ~p:~p", [Sources, Class, Reason])
    after
        _ = file:del_dir_r(Tmp)
    end.

%% All of the .beam's chunks, the edoc one added; written to a temporary
%% file and renamed, so a node reading the .beam never sees half of it.
add_chunk(Beam, Chunk) ->
    {ok, Docs} = file:read_file(Chunk),
    {ok, _Module, Chunks} = beam_lib:all_chunks(Beam),
    {ok, New} = beam_lib:build_module(Chunks ++ [{"Docs", Docs}]),
    ok = file:write_file(Beam ++ ".tmp", New),
    ok = file:rename(Beam ++ ".tmp", Beam).

fail(Format, Args) ->
    io:format(standard_error, "doc_chunks: " ++ Format ++ "~n", Args),
    halt(1).
