#!/usr/bin/env escript
%% Checks the package metadata of erlang_src/fin_close.app.src (what a Hex
%% publish reads: description, version, licences, links, files) and prints
%% the files the package would hold, one per line: the tracked files that
%% `files' names. scripts/consumers.sh builds its consumer projects from
%% these files alone, which shows the list is complete; Hex itself cannot
%% be reached from here.
-mode(compile).

main(_) ->
    {ok, [{application, fin_close, App}]} = file:consult("erlang_src/fin_close.app.src"),
    Tracked = string:lexemes(os:cmd("git ls-files"), "\n"),
    check(is_text(get(description, App)), "a description"),
    check(is_text(get(vsn, App)), "a version"),
    check(get(licenses, App) =:= ["Apache-2.0"], "licenses [\"Apache-2.0\"]"),
    {ok, Licence} = file:read_file("LICENSE"),
    check(binary:match(Licence, <<"Apache License">>) =/= nomatch andalso
              binary:match(Licence, <<"Version 2.0">>) =/= nomatch,
          "LICENSE with the Apache License 2.0"),
    Links = get(links, App),
    check(is_list(Links) andalso
              lists:all(fun({Name, "https://" ++ _}) -> is_text(Name); (_) -> false end, Links),
          "links as [{Name, \"https://...\"}]"),
    Links =:= [] andalso io:format(standard_error, "package: no links yet~n", []),
    Files = [{Entry, covered(Entry, Tracked)} || Entry <- get(files, App)],
    [check(Covered =/= [], "files entry " ++ Entry ++ " matches tracked files")
     || {Entry, Covered} <- Files],
    Package = lists:usort(lists:append([Covered || {_, Covered} <- Files])),
    Needed = [F || F <- Tracked, needed(F)],
    [check(lists:member(F, Package), "files holds " ++ F) || F <- Needed],
    [io:format("~s~n", [F]) || F <- Package],
    ok.

%% What the build needs: the Erlang sources, the crate, the hooks.
needed("erlang_src/" ++ _) -> true;
needed("native/src/" ++ _) -> true;
needed(F) -> lists:member(F, ["src", "rebar.config", "Cargo.toml", "Cargo.lock",
                              "native/Cargo.toml", "scripts/build_nif.sh",
                              "scripts/doc_chunks.escript", "LICENSE"]).

%% The tracked files an entry names: itself, the files under it (a
%% folder), or those its wildcard matches.
covered(Entry, Tracked) ->
    Glob = filelib:wildcard(Entry),
    [F || F <- Tracked,
          F =:= Entry orelse lists:prefix(Entry ++ "/", F) orelse lists:member(F, Glob)].

get(Key, App) -> proplists:get_value(Key, App).

is_text(S) -> io_lib:char_list(S) andalso S =/= "".

check(true, _) -> ok;
check(false, What) ->
    io:format(standard_error, "package: no ~s~n", [What]),
    halt(1).
