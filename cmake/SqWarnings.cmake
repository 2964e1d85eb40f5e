# Warnings and sanitizers applied to every project target through sq_options.
add_library(sq_options INTERFACE)
target_compile_options(sq_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${SQ_WERROR}>>:-Werror>)
# Exact IEEE semantics everywhere: the numerics are compared against references bit for bit.
target_compile_options(sq_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-fno-fast-math>)
if(SQ_SANITIZE)
  string(REPLACE ";" "," _sq_san "${SQ_SANITIZE}")
  target_compile_options(sq_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${_sq_san} -fno-omit-frame-pointer -fno-sanitize-recover=all>)
  target_link_options(sq_options INTERFACE -fsanitize=${_sq_san})
endif()
