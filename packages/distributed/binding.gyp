{
  "targets": [
    {
      "target_name": "residual_mpi",
      "sources": ["native/mpi.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "OMPI_SKIP_MPICXX=1", "MPICH_SKIP_MPICXX=1", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "<!@(mpicc --showme:compile)"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["<!@(mpicc --showme:link)"]
    }
  ]
}
