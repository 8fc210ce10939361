# SPDX-License-Identifier: Apache-2.0
# `cmake --install` in the GNUInstallDirs places, man pages from --help, systemd units, and
# `cpack -G DEB`. Paths below are relative to the install prefix, so one build installs
# under /usr/local (the default), any --prefix, or /usr in the .deb.
include(GNUInstallDirs)

install(TARGETS meshsig-gateway meshsig-coordinator meshsig-token
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Static files: the demo page the gateway serves (--static-dir) and the admin page (also
# built into the coordinator).
if(EXISTS ${CMAKE_SOURCE_DIR}/clients/js/web)
  install(DIRECTORY ${CMAKE_SOURCE_DIR}/clients/js/web/
    DESTINATION ${CMAKE_INSTALL_DATADIR}/meshsig/web)
endif()
set(_admin_page ${CMAKE_SOURCE_DIR}/coordinator/admin-ui/index.html)
if(NOT EXISTS ${_admin_page})
  set(_admin_page ${CMAKE_SOURCE_DIR}/coordinator/admin-ui-fallback.html)
endif()
install(FILES ${_admin_page} DESTINATION ${CMAKE_INSTALL_DATADIR}/meshsig/admin-ui
  RENAME index.html)

# Documentation and example configuration (copied to /etc/meshsig by the operator: they
# hold secrets, so the package ships no live copy).
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_SOURCE_DIR}/CHANGELOG.md
  ${CMAKE_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${CMAKE_SOURCE_DIR}/deploy/systemd/gateway.env
  ${CMAKE_SOURCE_DIR}/deploy/systemd/coordinator.env
  ${CMAKE_SOURCE_DIR}/deploy/systemd/nats-server.conf
  DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/nats/nats.conf
  DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples RENAME nats-cluster.conf)
# Users and subject permissions; nats-cluster.conf includes it from its own directory.
install(FILES ${CMAKE_SOURCE_DIR}/deploy/nats/auth.conf DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# Man pages from --help and --version (help2man, deploy/install-deps.sh).
find_program(HELP2MAN help2man)
if(HELP2MAN)
  set(_man_gateway "WebRTC signaling gateway: client WebSockets bridged to NATS")
  set(_man_coordinator "WebRTC signaling coordinator: topologies, routing, admin API")
  set(_man_token "mint a hello token (JWT) for meshsig")
  set(_pages)
  foreach(t gateway coordinator token)
    set(_page ${CMAKE_BINARY_DIR}/man/meshsig-${t}.1)
    add_custom_command(OUTPUT ${_page}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
      COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
              ${HELP2MAN} --no-info --section=1 --source=meshsig --name=${_man_${t}}
              --output=${_page} $<TARGET_FILE:meshsig-${t}>
      DEPENDS meshsig-${t}
      COMMENT "help2man meshsig-${t}" VERBATIM)
    list(APPEND _pages ${_page})
  endforeach()
  add_custom_target(ms_man ALL DEPENDS ${_pages})
  install(FILES ${_pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
elseif(DEFINED ENV{CI})
  message(FATAL_ERROR "help2man is missing (deploy/install-deps.sh): no man pages")
else()
  message(WARNING "help2man not found: man pages are not built or installed")
endif()

# systemd units, written at install time: their paths follow the prefix actually installed
# to (cmake --install --prefix, or /usr in the .deb), with /etc for the /usr prefix.
install(CODE "set(MS_SRC \"${CMAKE_SOURCE_DIR}\")
set(MS_OUT \"${CMAKE_BINARY_DIR}/systemd\")
set(MS_BINDIR_REL \"${CMAKE_INSTALL_BINDIR}\")
set(MS_DATADIR_REL \"${CMAKE_INSTALL_DATADIR}\")
set(MS_DOCDIR_REL \"${CMAKE_INSTALL_DOCDIR}\")")
install(SCRIPT ${CMAKE_SOURCE_DIR}/cmake/install_units.cmake)

# The .deb: cpack -G DEB (from the build directory).
execute_process(COMMAND ${CMAKE_SOURCE_DIR}/deploy/install-deps.sh --list-runtime-libs
  OUTPUT_VARIABLE MS_DEB_DEPENDS OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0 OR NOT MS_DEB_DEPENDS)
  message(FATAL_ERROR "deploy/install-deps.sh --list-runtime-libs failed")
endif()
string(REPLACE "," ", " MS_DEB_DEPENDS "${MS_DEB_DEPENDS}")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME meshsig)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "meshsig")
set(CPACK_PACKAGE_CONTACT "meshsig maintainers <maintainers@meshsig.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "clustered WebRTC signaling service")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "clustered WebRTC signaling service
 meshsig tells WebRTC peers whom to connect to (full mesh, Delaunay mesh, k-ary
 tree, random peer sampling) and relays their offers, answers and ICE candidates.
 Gateways terminate client WebSockets; coordinators own shards of namespaces
 leased in NATS JetStream. Ships meshsig-gateway, meshsig-coordinator,
 meshsig-token, systemd units and example configuration.")
set(CPACK_RESOURCE_FILE_LICENSE ${CMAKE_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "${MS_DEB_DEPENDS}")
# NATS may run on other hosts; on a single host it is the neighbour to install.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "nats-server")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "haproxy")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_SOURCE_DIR}/deploy/debian/postinst ${CMAKE_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
