# Installs the fanout build in FANOUT_BUILD_DIR into a scratch prefix, then builds and runs the
# consumer project in CONSUMER_SOURCE_DIR against it. Any failing step fails the test.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "package test step failed (${result}): ${ARGN}")
  endif()
endfunction()

step(${CMAKE_COMMAND} --install ${FANOUT_BUILD_DIR} --prefix ${prefix})
step(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${WORK_DIR}/build -G ${CMAKE_GENERATOR}
     -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
step(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
step(${WORK_DIR}/build/consumer)
# A task library built against fanout::task_library, loaded by the installed worker and called
# through the installed broker.
step(${CMAKE_CURRENT_LIST_DIR}/task_library_check.sh ${prefix} ${WORK_DIR}/build/libconsumer_tasks.so
     ${WORK_DIR}/build/task_caller)
