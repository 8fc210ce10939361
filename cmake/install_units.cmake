# SPDX-License-Identifier: Apache-2.0
# Install-time part of cmake/package.cmake: the systemd units with the paths of the prefix
# being installed to. MS_* come from an install(CODE) before this script.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(MS_SYSCONFDIR /etc)
else()
  set(MS_SYSCONFDIR ${CMAKE_INSTALL_PREFIX}/etc)
endif()
set(MS_BINDIR ${CMAKE_INSTALL_PREFIX}/${MS_BINDIR_REL})
set(MS_DATADIR ${CMAKE_INSTALL_PREFIX}/${MS_DATADIR_REL})
set(MS_DOCDIR ${CMAKE_INSTALL_PREFIX}/${MS_DOCDIR_REL})
foreach(u meshsig-gateway meshsig-coordinator)
  configure_file(${MS_SRC}/deploy/systemd/${u}.service.in ${MS_OUT}/${u}.service @ONLY)
  file(INSTALL ${MS_OUT}/${u}.service DESTINATION ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
endforeach()
