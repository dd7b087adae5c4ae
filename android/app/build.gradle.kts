import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
    alias(libs.plugins.kotlin.compose)
}

android {
    namespace = "net.traffix.node"
    compileSdk = 36

    defaultConfig {
        applicationId = "net.traffix.node"
        // 29 (Android 10): the first release whose platform TLS speaks 1.3, which the tunnel requires
        // (no bundled Conscrypt).
        minSdk = 29
        targetSdk = 36
        versionCode = 1
        versionName = "0.1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    buildFeatures {
        compose = true
        // BuildConfig.VERSION_NAME goes into PAIR's app_version.
        buildConfig = true
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    implementation(project(":core"))
    implementation(libs.okhttp)

    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.activity.compose)
    implementation(libs.androidx.lifecycle.service)
    implementation(libs.androidx.lifecycle.runtime.compose)
    implementation(libs.kotlinx.coroutines.android)
    implementation(platform(libs.androidx.compose.bom))
    implementation(libs.androidx.compose.ui)
    implementation(libs.androidx.compose.foundation)
    implementation(libs.androidx.compose.material3)

    // QR scanning: zxing-android-embedded (Apache-2.0, ZXing decoding on the device, Maven Central)
    // rather than Google's code scanner (com.google.android.gms:play-services-code-scanner), which
    // needs Google Play services and so fails on de-Googled phones and cannot ship on F-Droid. The
    // price is the CAMERA permission, which its CaptureActivity requests itself when scanning.
    implementation(libs.zxing.android.embedded)

    // Pure helpers (Formats.kt): plain JUnit on the JVM, no device.
    testImplementation(libs.junit)
}
