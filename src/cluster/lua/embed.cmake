# Generates lua_scripts.hpp: each .lua file as a raw string constant.
set(out "// Generated from src/cluster/lua/*.lua by embed.cmake. Do not edit.\n#pragma once\n")
string(APPEND out "namespace imgate::lua {\n")
foreach(name login logout reap unicast online_any sync history_append history_read reap_room sync_room
             register publish_once room_nodes)
  file(READ "${SRC}/${name}.lua" text)
  string(APPEND out "inline constexpr const char* k_${name} = R\"imgate_lua(${text})imgate_lua\";\n")
endforeach()
string(APPEND out "}  // namespace imgate::lua\n")
file(WRITE "${OUT}" "${out}")
