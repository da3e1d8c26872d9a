# Generates web_embedded.cpp: every file of web/ the gateway serves, as string
# constants, so that an installed binary carries its chat page (--web-root
# still serves a directory instead, for development).
file(GLOB files RELATIVE "${SRC}" "${SRC}/*.html" "${SRC}/*.js" "${SRC}/*.css")
list(SORT files)
set(out "// Generated from web/ by web_embed.cmake. Do not edit.\n#include \"http/web_assets.hpp\"\n\nnamespace imgate {\n\nconst std::vector<EmbeddedFile>& embedded_web_files() {\n  static const std::vector<EmbeddedFile> files{\n")
foreach(name ${files})
  file(READ "${SRC}/${name}" text)
  string(FIND "${text}" ")imgate_web\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "web/${name} contains the raw string delimiter")
  endif()
  string(APPEND out "      {\"${name}\", R\"imgate_web(${text})imgate_web\"},\n")
endforeach()
string(APPEND out "  };\n  return files;\n}\n\n}  // namespace imgate\n")
file(WRITE "${OUT}" "${out}")
